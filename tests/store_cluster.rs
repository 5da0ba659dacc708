//! The atomic unit against a real 6-node cluster: counters, apply-once, blacklist merge rules,
//! and one `FCALL` per slot per batch.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fds_testkit::localstack::RedisCluster;
use fds_worker::event::{
    EntityKind, FraudVerdict, Subject, ThreatLevel, Transaction, VerdictAction,
};
use fds_worker::plan::{EventBody, PlanSettings, PlannedEvent, Planner, SourceRef};
use fds_worker::slot::keys::{Entity, KeyBuilder};
use fds_worker::store::{FailureKind, RetryPolicy, Store, StoreSettings};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn settings(cluster: &RedisCluster) -> StoreSettings {
    StoreSettings {
        nodes: cluster.seed_urls(),
        username: None,
        password: None,
        tls: Default::default(),
        connect_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_millis(1000),
        max_inflight_units: 32,
        retry: RetryPolicy {
            budget: Duration::from_secs(6),
            max_attempts: 100,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(500),
            max_retries_per_second: 1000,
        },
        wait_replicas: 0,
        wait_timeout: Duration::from_millis(100),
        max_units_per_second: 0,
        library: Default::default(),
    }
}

fn planner(namespace: &str) -> Planner {
    let mut settings = PlanSettings::seed_defaults();
    settings.keys = KeyBuilder::namespaced(namespace);
    Planner::new(settings)
}

fn tx(user: &str, ip: &str, time: i64, offset: i64) -> PlannedEvent {
    PlannedEvent {
        source: SourceRef {
            topic: Arc::from("transactions"),
            partition: 0,
            offset,
        },
        body: EventBody::Transaction(Transaction {
            event_id: format!("e{offset}"),
            user_id: user.into(),
            amount_minor: 100,
            currency: "EUR".into(),
            card_bin: Some("411111".into()),
            ip: Some(ip.into()),
            email: None,
            device_id: None,
            merchant_id: None,
            event_time_ms: time,
        }),
        redrive: None,
    }
}

fn verdict(
    value: &str,
    action: VerdictAction,
    level: ThreatLevel,
    time: i64,
    offset: i64,
) -> PlannedEvent {
    PlannedEvent {
        source: SourceRef {
            topic: Arc::from("fraud-verdicts"),
            partition: 0,
            offset,
        },
        body: EventBody::Verdict(FraudVerdict {
            verdict_id: format!("v{offset}"),
            subject: Subject {
                kind: EntityKind::Ip,
                value: value.into(),
            },
            action,
            threat_level: level,
            reason: format!("reason {offset}"),
            source: "test".into(),
            event_time_ms: time,
        }),
        redrive: None,
    }
}

/// A cluster of this test's own (for counts Redis keeps per node or cluster-wide), a store on
/// it, and a planner in a fresh key namespace.
async fn own_cluster() -> (RedisCluster, Store, String, Planner) {
    let cluster = tokio::task::spawn_blocking(common::start_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let planner = planner(&ns);
    (cluster, store, ns, planner)
}

/// `cmdstat_fcall` calls summed over every master.
fn fcall_count(cluster: &RedisCluster) -> u64 {
    let calls = fds_testkit::bench::redis_stats::command_calls(cluster).unwrap();
    calls.get("fcall").copied().unwrap_or(0)
}

async fn get(store: &Store, key: &str) -> Option<String> {
    let mut connection = store.connection();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// One tile of a count or sum feature's hash.
async fn hget(store: &Store, key: &str, tile: i64) -> Option<String> {
    let mut connection = store.connection();
    redis::cmd("HGET")
        .arg(key)
        .arg(tile)
        .query_async(&mut connection)
        .await
        .unwrap()
}

async fn ttl(store: &Store, key: &str) -> i64 {
    let mut connection = store.connection();
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_are_applied_once_even_when_a_batch_is_sent_twice() {
    // A cluster of its own: FCALLs are counted cluster-wide, and the other tests' units would
    // be counted too on a shared one.
    let (cluster, store, ns, planner) = own_cluster().await;
    let t = now_ms();
    let events: Vec<_> = (0..40)
        .map(|i| tx(&format!("u{}", i % 8), &format!("10.0.0.{}", i % 3), t, i))
        .collect();
    let plan = planner.plan(&events, t);
    let distinct_slots = plan.units.len();
    assert!(distinct_slots < events.len(), "entities share units");

    let before = tokio::task::block_in_place(|| fcall_count(&cluster));
    let results = store.submit(plan.units.clone()).await;
    let after = tokio::task::block_in_place(|| fcall_count(&cluster));
    assert_eq!(
        after - before,
        distinct_slots as u64,
        "exactly one FCALL per slot"
    );
    assert!(results.iter().all(|(_, r)| r.is_ok()));

    // Redelivery of the whole batch: nothing is applied again.
    let again = store.submit(plan.units.clone()).await;
    for (_, answer) in &again {
        let answer = answer.as_ref().unwrap();
        for op in answer.entities.iter().flatten() {
            assert!(!op.applied, "redelivered op must be skipped");
        }
    }
    let keys = KeyBuilder::namespaced(&ns);
    let tile = t.div_euclid(5_000);
    let user = Entity::new(EntityKind::User, "u0").tag();
    let minute = keys.feature(&user, "user_tx_1m");
    assert_eq!(hget(&store, &minute, tile).await.as_deref(), Some("5"));
    let ip = Entity::new(EntityKind::Ip, "10.0.0.0").tag();
    assert_eq!(
        hget(&store, &keys.feature(&ip, "ip_tx_1m"), tile)
            .await
            .as_deref(),
        Some("14")
    );
    let card = Entity::new(EntityKind::CardBin, "411111").tag();
    assert_eq!(
        hget(
            &store,
            &keys.feature(&card, "card_bin_tx_1h"),
            t.div_euclid(60_000)
        )
        .await
        .as_deref(),
        Some("40")
    );
    let counter_ttl = ttl(&store, &minute).await;
    assert!(
        (60..=126).contains(&counter_ttl),
        "the minute feature lives until its tile leaves the window, + grace: {counter_ttl}"
    );
    // u0 made 5 transactions in a minute: not over the threshold of 5.
    assert_eq!(get(&store, &keys.blacklist(&user)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_velocity_breach_blacklists_the_user_temporarily() {
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let planner = planner(&ns);
    let t = now_ms();
    let events: Vec<_> = (0..6).map(|i| tx("burst", "10.9.9.9", t, i)).collect();
    let plan = planner.plan(&events, t);
    let results = store.submit(plan.units).await;
    let user = Entity::new(EntityKind::User, "burst").tag();
    let sixth = results
        .iter()
        .find_map(|(unit, r)| {
            let e = unit.entities.iter().position(|e| e.tag == user)?;
            Some(r.as_ref().unwrap().entities[e][5].clone())
        })
        .unwrap();
    assert!(
        sixth.breached,
        "the 6th transaction in a minute breaches threshold 5"
    );
    assert_eq!(sixth.counts[0], 6);
    let entry = sixth
        .entry
        .expect("the breach is visible to its own lookup");
    assert_eq!(entry.threat_level, ThreatLevel::Temporary);
    assert!(entry.reason.contains("6 events in 60s"), "{}", entry.reason);
    let ttl = ttl(&store, &KeyBuilder::namespaced(&ns).blacklist(&user)).await;
    assert!(
        (3590..=3600).contains(&ttl),
        "TEMPORARY tier is 1 h from event time: {ttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blacklist_adds_never_lower_or_shorten_and_removes_respect_event_time() {
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let planner = planner(&ns);
    let keys = KeyBuilder::namespaced(&ns);
    let key = keys.blacklist(&Entity::new(EntityKind::Ip, "6.6.6.6").tag());
    let t = now_ms();
    let run = |events: Vec<PlannedEvent>| {
        let units = planner.plan(&events, t).units;
        let store = store.clone();
        async move {
            for (_, r) in store.submit(units).await {
                r.unwrap();
            }
        }
    };
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Add,
        ThreatLevel::StolenCard,
        t,
        1,
    )])
    .await;
    let first_ttl = ttl(&store, &key).await;
    assert!((30 * 86_400 - 10..=30 * 86_400).contains(&first_ttl));
    // A lower level later: keeps STOLEN_CARD and its expiry.
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Add,
        ThreatLevel::Temporary,
        t + 1000,
        2,
    )])
    .await;
    let value = get(&store, &key).await.unwrap();
    assert!(value.contains("STOLEN_CARD"), "{value}");
    assert!(ttl(&store, &key).await >= first_ttl - 2);
    // A REMOVE older than the latest ADD leaves it.
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Remove,
        ThreatLevel::Temporary,
        t + 500,
        3,
    )])
    .await;
    assert!(
        get(&store, &key).await.is_some(),
        "REMOVE before the latest ADD keeps the entry"
    );
    // PERMANENT has no expiry.
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Add,
        ThreatLevel::Permanent,
        t + 2000,
        4,
    )])
    .await;
    assert_eq!(ttl(&store, &key).await, -1);
    // A later REMOVE (false positive) deletes it.
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Remove,
        ThreatLevel::Temporary,
        t + 3000,
        5,
    )])
    .await;
    assert_eq!(get(&store, &key).await, None);
    // An ADD whose tier already ended is not resurrected.
    let old = t - 2 * 3_600_000;
    run(vec![verdict(
        "6.6.6.6",
        VerdictAction::Add,
        ThreatLevel::Temporary,
        old,
        6,
    )])
    .await;
    assert_eq!(get(&store, &key).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_under_another_library_name_loads_its_own_function_beside_the_default() {
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let default = Store::connect(settings(&cluster)).await.unwrap();
    let mut other_settings = settings(&cluster);
    other_settings.library = fds_worker::store::wire::Library::named("fds_other");
    let other = Store::connect(other_settings).await.unwrap();

    // Both libraries on every master; the function names do not collide.
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for master in masters {
        let listed = tokio::task::block_in_place(|| {
            let mut node = cluster.connection(master).unwrap();
            let listed: redis::Value = redis::cmd("FUNCTION").arg("LIST").query(&mut node).unwrap();
            format!("{listed:?}")
        });
        for name in ["fds_apply_v1", "fds_other_apply_v1"] {
            assert!(listed.contains(name), "{name} on node {master}: {listed}");
        }
    }

    // Units run through the other library's function, once.
    let ns = common::random_name("ns");
    let t = now_ms();
    let events: Vec<_> = (0..6).map(|i| tx("lib-user", "10.9.0.1", t, i)).collect();
    let plan = planner(&ns).plan(&events, t);
    let results = other.submit(plan.units.clone()).await;
    assert!(results.iter().all(|(_, r)| r.is_ok()));
    let again = default.submit(plan.units).await;
    assert!(
        again
            .iter()
            .flat_map(|(_, r)| r.as_ref().unwrap().entities.iter().flatten())
            .all(|op| !op.applied),
        "the same apply-once marks, whichever library applied them"
    );
    let keys = KeyBuilder::namespaced(&ns);
    let user = Entity::new(EntityKind::User, "lib-user").tag();
    assert_eq!(
        hget(
            &other,
            &keys.feature(&user, "user_tx_1m"),
            t.div_euclid(5_000)
        )
        .await
        .as_deref(),
        Some("6")
    );
}

/// A master that lost the function library (a node restarted empty answers an `FCALL` with
/// `ERR Function not found`) gets it loaded again, and the unit is applied, not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_on_a_master_that_lost_the_function_library_reloads_it_and_is_applied() {
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let mut lost_settings = settings(&cluster);
    lost_settings.library = fds_worker::store::wire::Library::named("fds_reloaded");
    let store = Store::connect(lost_settings).await.unwrap();
    for master in cluster.masters() {
        tokio::task::block_in_place(|| {
            let mut node = cluster.connection(master).unwrap();
            let _: () = redis::cmd("FUNCTION")
                .arg("DELETE")
                .arg("fds_reloaded")
                .query(&mut node)
                .unwrap();
        });
    }

    let ns = common::random_name("ns");
    let t = now_ms();
    let events: Vec<_> = (0..4)
        .map(|i| tx("reload-user", "10.8.0.1", t, i))
        .collect();
    let plan = planner(&ns).plan(&events, t);
    let results = store.submit(plan.units).await;
    for (unit, result) in &results {
        assert!(result.is_ok(), "slot {}: {result:?}", unit.slot);
    }
    let keys = KeyBuilder::namespaced(&ns);
    let user = Entity::new(EntityKind::User, "reload-user").tag();
    assert_eq!(
        hget(
            &store,
            &keys.feature(&user, "user_tx_1m"),
            t.div_euclid(5_000)
        )
        .await
        .as_deref(),
        Some("4")
    );
}

/// The answers of `user`'s ops, in op order, across the units of `results`.
fn user_answers(
    results: &[(
        fds_worker::plan::SlotUnit,
        Result<fds_worker::plan::UnitAnswer, fds_worker::store::UnitFailure>,
    )],
    tag: &str,
) -> Vec<fds_worker::plan::OpAnswer> {
    results
        .iter()
        .find_map(|(unit, r)| {
            let e = unit.entities.iter().position(|e| e.tag == tag)?;
            Some(r.as_ref().unwrap().entities[e].clone())
        })
        .expect("the user has a unit")
}

/// The boundary burst on the real cluster: 8 payments within 2.8 s straddling the
/// latest minute edge come back with sliding counts 1..8 (not 1,2,3,4,1,2,3,4), the 6th
/// breaches; redelivered, nothing is added and every op reads the window's value back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_across_a_minute_edge_slides_and_a_redelivery_reads_it_back() {
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let planner = planner(&ns);
    let now = now_ms();
    // The latest minute edge at least 1.4 s in the past, so every event is in the past.
    let edge = (now - 1_400).div_euclid(60_000) * 60_000;
    let events: Vec<_> = (0..8)
        .map(|i| tx("edge", "10.7.7.7", edge - 1_400 + i * 400, i))
        .collect();
    let plan = planner.plan(&events, now);
    let results = store.submit(plan.units.clone()).await;
    let user = Entity::new(EntityKind::User, "edge").tag();
    let answers = user_answers(&results, &user);
    let minute: Vec<i64> = answers.iter().map(|a| a.counts[0]).collect();
    assert_eq!(minute, vec![1, 2, 3, 4, 5, 6, 7, 8], "user_tx_1m slides");
    let breached: Vec<bool> = answers.iter().map(|a| a.breached).collect();
    assert_eq!(breached.iter().filter(|b| **b).count(), 3, "{breached:?}");
    assert!(breached[5], "the 6th breaches");

    let again = store.submit(plan.units).await;
    let answers = user_answers(&again, &user);
    assert!(
        answers.iter().all(|a| !a.applied),
        "a redelivered op adds nothing"
    );
    // ... and reads its window's tiles back, now with every event applied: the four before
    // the edge (a 5 s tile of their own) see their tile, the four after see all eight.
    let read_back: Vec<i64> = answers.iter().map(|a| a.counts[0]).collect();
    assert_eq!(read_back, vec![4, 4, 4, 4, 8, 8, 8, 8]);
}

/// Sums per currency and distinct counts on the real cluster, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_are_per_currency_and_distinct_counts_use_the_tiles_hyperloglogs() {
    use fds_worker::config::{Aggregate, FeatureConfig, Field};
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let mut plan_settings = PlanSettings::seed_defaults();
    plan_settings.keys = KeyBuilder::namespaced(&ns);
    plan_settings.features = vec![
        FeatureConfig {
            name: "user_spend_1h".into(),
            entity: EntityKind::User,
            aggregate: Aggregate::Sum,
            of: Some(Field::AmountMinor),
            window: Duration::from_secs(3600),
            tile: Duration::from_secs(60),
            threshold: Some(1_000),
        },
        FeatureConfig {
            name: "ip_users_1h".into(),
            entity: EntityKind::Ip,
            aggregate: Aggregate::Distinct,
            of: Some(Field::UserId),
            window: Duration::from_secs(3600),
            tile: Duration::from_secs(60),
            threshold: None,
        },
    ];
    let planner = Planner::new(plan_settings);
    let now = now_ms();
    // 30 transactions of one user (alternating EUR / KRW, 100 minor units each) over the last
    // 20 minutes, and 50 users on one IP, each twice.
    let mut events = Vec::new();
    for i in 0..30 {
        let mut event = tx("spender", "10.1.1.1", now - 1_200_000 + i * 40_000, i);
        if let EventBody::Transaction(t) = &mut event.body {
            t.currency = if i % 2 == 0 { "EUR" } else { "KRW" }.into();
        }
        events.push(event);
    }
    for i in 0..100 {
        events.push(tx(
            &format!("shared-{}", i % 50),
            "10.2.2.2",
            now - 1_800_000 + i * 10_000,
            100 + i,
        ));
    }
    let plan = planner.plan(&events, now);
    let results = store.submit(plan.units.clone()).await;
    let spender = Entity::new(EntityKind::User, "spender").tag();
    let sums: Vec<i64> = user_answers(&results, &spender)
        .iter()
        .map(|a| a.counts[0])
        .collect();
    let expected: Vec<i64> = (0..30).map(|i| (i / 2 + 1) * 100).collect();
    assert_eq!(sums, expected, "each currency summed on its own");
    let ip = Entity::new(EntityKind::Ip, "10.2.2.2").tag();
    let distinct: Vec<i64> = user_answers(&results, &ip)
        .iter()
        .map(|a| a.counts[0])
        .collect();
    // HyperLogLog: ~0.81 % standard error; at 50 Redis's sparse encoding is exact in practice,
    // the bound allowed here is 3 standard errors, at least 1.
    let last = *distinct.last().unwrap();
    assert!((49..=51).contains(&last), "50 users on the IP: {last}");
    assert!(distinct.windows(2).all(|w| w[0] <= w[1]), "{distinct:?}");

    let again = store.submit(plan.units).await;
    let read_back: Vec<i64> = user_answers(&again, &spender)
        .iter()
        .map(|a| a.counts[0])
        .collect();
    // Redelivered: nothing added; each op reads its window's tiles with every event applied
    // (the same currency, tiles up to its own).
    let time = |i: i64| now - 1_200_000 + i * 40_000;
    let expected: Vec<i64> = (0..30)
        .map(|i| {
            (0..30)
                .filter(|j| {
                    j % 2 == i % 2 && time(*j).div_euclid(60_000) <= time(i).div_euclid(60_000)
                })
                .count() as i64
                * 100
        })
        .collect();
    assert_eq!(read_back, expected);
    let keys = KeyBuilder::namespaced(&ns);
    assert_eq!(
        hget(
            &store,
            &keys.feature_sum(&spender, "user_spend_1h", "KRW"),
            (now - 1_200_000 + 40_000).div_euclid(60_000)
        )
        .await
        .as_deref(),
        Some("100")
    );
    let again_ip = user_answers(&again, &ip);
    assert_eq!(again_ip.last().unwrap().counts[0], last);
}

/// The unit trims tiles no window reads any more: a feature of 2 one-second tiles (no grace)
/// keeps at most 3 fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_tiles_are_trimmed_by_the_unit() {
    use fds_worker::config::FeatureConfig;
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let mut plan_settings = PlanSettings::seed_defaults();
    plan_settings.keys = KeyBuilder::namespaced(&ns);
    plan_settings.grace_ms = 0;
    plan_settings.features = vec![FeatureConfig::count(
        "user_tx_2s",
        EntityKind::User,
        2,
        1,
        None,
    )];
    let planner = Planner::new(plan_settings);
    let first = now_ms();
    let plan = planner.plan(&[tx("trim", "10.3.3.3", first, 0)], first);
    store.submit(plan.units).await;
    // Tile `first / 1 s` is read until the end of the tile 2 s later: wait until it is not.
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let now = now_ms();
    let events: Vec<_> = (0..3)
        .map(|i| tx("trim", "10.3.3.3", now - 2_000 + i * 1_000, 1 + i))
        .collect();
    let plan = planner.plan(&events, now);
    store.submit(plan.units).await;
    let key = KeyBuilder::namespaced(&ns)
        .feature(&Entity::new(EntityKind::User, "trim").tag(), "user_tx_2s");
    let mut connection = store.connection();
    let fields: Vec<String> = redis::cmd("HKEYS")
        .arg(&key)
        .query_async(&mut connection)
        .await
        .unwrap();
    // Tiles only (the running total's `ws`, `we`, `wt` are the other fields).
    let fields: Vec<i64> = fields.iter().filter_map(|f| f.parse().ok()).collect();
    assert!(
        fields.len() <= 3,
        "at most window/tile + 1 tiles: {fields:?}"
    );
    assert!(
        !fields.contains(&first.div_euclid(1_000)),
        "the expired first tile was trimmed: {fields:?}"
    );
}

/// The Redis cost of the default features, counted by Redis itself (`INFO commandstats`, which
/// includes the commands a function calls): per feature op one `HMGET` (the tile and the
/// window's running total) and one `HSET`; per new tile one `EXPIRETIME` and one `HLEN`, an
/// `EXPIREAT` only when the newest tile moves;
/// per event and entity one mark read and write. Printed for the README's cost table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_commands_per_event_are_the_stated_ones() {
    // A cluster of its own: command counts are cluster-wide.
    let (cluster, store, _ns, planner) = own_cluster().await;
    let t = now_ms();
    let events: Vec<_> = (0..400)
        .map(|i| {
            tx(
                &format!("cost-{}", i % 40),
                &format!("10.5.0.{}", i % 7),
                t,
                i,
            )
        })
        .collect();
    let plan = planner.plan(&events, t);
    let feature_ops: u64 = plan
        .units
        .iter()
        .flat_map(|u| u.entities.iter().flat_map(|e| &e.ops))
        .map(|op| op.features.len() as u64)
        .sum();
    let entity_ops: u64 = plan
        .units
        .iter()
        .flat_map(|u| u.entities.iter().flat_map(|e| &e.ops))
        .filter(|op| op.mark.is_some())
        .count() as u64;
    let before = tokio::task::block_in_place(|| {
        fds_testkit::bench::redis_stats::command_calls(&cluster).unwrap()
    });
    for (_, result) in store.submit(plan.units).await {
        result.unwrap();
    }
    let after = tokio::task::block_in_place(|| {
        fds_testkit::bench::redis_stats::command_calls(&cluster).unwrap()
    });
    let calls = |command: &str| {
        after.get(command).copied().unwrap_or(0) - before.get(command).copied().unwrap_or(0)
    };
    // 400 transactions × (user, card BIN, IP) × 3 default features.
    assert_eq!(feature_ops, 400 * 3 * 3);
    // All 400 events share one tile per feature: each feature key is new, gets one new tile,
    // whose expiry and size are checked once, and its running total made from its tiles (one
    // more HMGET); the other events of the tile cost no check. A marks key reads its expiry
    // before each write of its marks (`HSET`), and gets it set once (40 users, 1 card BIN,
    // 7 IPs). Each user's 6th to 10th transaction in the minute breaches the default rule and
    // merges into its blacklist entry (`SET`), reading the entry's expiry first unless the
    // entry is new (one per user).
    let feature_keys = 40 * 3 + 3 + 7 * 3;
    let mark_keys = 40 + 1 + 7;
    assert_eq!(calls("hincrby"), 0, "tiles and totals are written together");
    assert_eq!(
        calls("hmget"),
        feature_ops + feature_keys as u64,
        "one read of the tile and the running total per feature op; the tiles once per key"
    );
    let mark_writes = calls("hset") - feature_ops;
    assert_eq!(
        calls("hlen"),
        feature_keys as u64,
        "one size check per new tile"
    );
    assert_eq!(
        calls("expiretime"),
        feature_keys as u64 + mark_writes + calls("set") - 40,
        "one expiry read per new tile, per write of a marks key and per merge into an entry"
    );
    assert_eq!(calls("hgetall"), 0, "nothing to trim in a fresh window");
    assert_eq!(calls("expireat"), (feature_keys + mark_keys) as u64);
    let per_event: u64 = [
        "hmget",
        "hlen",
        "expiretime",
        "expireat",
        "hget",
        "hset",
        "get",
        "pttl",
        "time",
        "persist",
    ]
    .iter()
    .map(|c| calls(c))
    .sum();
    println!(
        "commands inside the units: {per_event} for 400 transactions ({:.1} per transaction, \
         {feature_ops} feature ops, {entity_ops} entity ops): {:?}",
        per_event as f64 / 400.0,
        after
            .iter()
            .map(|(c, n)| (c.clone(), n - before.get(c).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect::<Vec<_>>()
    );
}

/// Large amounts are summed exactly (written as decimal integers, not as Lua's `1e+15`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_amounts_sum_exactly() {
    use fds_worker::config::{Aggregate, FeatureConfig, Field};
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let ns = common::random_name("ns");
    let mut plan_settings = PlanSettings::seed_defaults();
    plan_settings.keys = KeyBuilder::namespaced(&ns);
    plan_settings.features = vec![FeatureConfig {
        name: "user_spend_1h".into(),
        entity: EntityKind::User,
        aggregate: Aggregate::Sum,
        of: Some(Field::AmountMinor),
        window: Duration::from_secs(3600),
        tile: Duration::from_secs(60),
        threshold: None,
    }];
    plan_settings.breach = None;
    let planner = Planner::new(plan_settings);
    let now = now_ms();
    let events: Vec<_> = (0..2)
        .map(|i| {
            let mut event = tx("whale", "10.4.4.4", now - 1_000 + i, i);
            if let EventBody::Transaction(t) = &mut event.body {
                t.amount_minor = 4_000_000_000_000_123;
            }
            event
        })
        .collect();
    let results = store.submit(planner.plan(&events, now).units).await;
    let tag = Entity::new(EntityKind::User, "whale").tag();
    let values: Vec<i64> = user_answers(&results, &tag)
        .iter()
        .map(|a| a.counts[0])
        .collect();
    assert_eq!(values, vec![4_000_000_000_000_123, 8_000_000_000_000_246]);
}

/// `maxmemory` reached under `noeviction`: the node answers every write with `OOM`. That is the
/// node's capacity running out, not a bad event: the unit backs off like in an outage and is
/// applied (once) when memory is freed within the budget; past the budget it fails as OOM
/// (the worker then dead-letters it) — after retrying, not at the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_is_waited_out_within_the_budget_then_its_units_fail_as_oom() {
    let (cluster, store, ns, planner) = own_cluster().await;
    let t = now_ms();
    let config = |node: usize, key: &str, value: &str| {
        let _: () = cluster
            .query(node, redis::cmd("CONFIG").arg("SET").arg(key).arg(value))
            .unwrap();
    };
    let user = Entity::new(EntityKind::User, "full-node-user").tag();
    let slot = fds_worker::slot::key_slot(user.as_bytes());
    let master = cluster
        .master_for_slot(slot)
        .expect("a master serves the slot");
    config(master, "maxmemory-policy", "noeviction");

    // Full for a while, then memory is freed: applied once, after retries.
    config(master, "maxmemory", "1");
    let plan = planner.plan(&[tx("full-node-user", "10.9.0.1", t, 1)], t);
    let unit_for_user = |plan: &fds_worker::plan::BatchPlan| {
        plan.units
            .iter()
            .filter(|u| u.slot == slot)
            .cloned()
            .collect::<Vec<_>>()
    };
    let units = unit_for_user(&plan);
    assert_eq!(units.len(), 1);
    let submitted = tokio::spawn(store.submit(units));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !submitted.is_finished(),
        "an OOM is waited out, not failed at once"
    );
    config(master, "maxmemory", "0");
    let results = submitted.await.unwrap();
    let answer = results[0]
        .1
        .as_ref()
        .expect("applied once memory was freed");
    assert!(answer.entities.iter().flatten().all(|op| op.applied));
    let keys = KeyBuilder::namespaced(&ns);
    let minute = keys.feature(&user, "user_tx_1m");
    assert_eq!(
        hget(&store, &minute, t.div_euclid(5_000)).await.as_deref(),
        Some("1")
    );

    // Full past the budget: the unit fails as OOM, after several attempts.
    config(master, "maxmemory", "1");
    let plan = planner.plan(&[tx("full-node-user", "10.9.0.1", t, 2)], t);
    let results = store.submit(unit_for_user(&plan)).await;
    config(master, "maxmemory", "0");
    let failure = results[0]
        .1
        .as_ref()
        .expect_err("still full past the budget");
    assert_eq!(failure.kind, FailureKind::OutOfMemory, "{failure:?}");
    assert!(failure.attempts > 1, "retried: {failure:?}");
    assert_eq!(
        hget(&store, &minute, t.div_euclid(5_000)).await.as_deref(),
        Some("1"),
        "nothing of the failed unit was applied"
    );
}

/// A unit's first attempt can write and lose its reply with the node (a shard lost right
/// then): its events are dead-lettered with the entity named as failed, though the entity
/// holds the writes. Redrive asks the entity's list of recent offsets: an original offset in it
/// is skipped (marked done under the dead letter's identity), one not in it is applied — also
/// after later events of the same entity were applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_skips_an_event_whose_lost_first_attempt_applied_and_applies_one_that_did_not() {
    let (_cluster, store, ns, planner) = own_cluster().await;
    let t = now_ms();
    let user = Entity::new(EntityKind::User, "redriven").tag();
    let keys = KeyBuilder::namespaced(&ns);
    let minute = keys.feature(&user, "user_tx_1m");
    let tile = t.div_euclid(5_000);
    let event = |offset: i64| tx("redriven", "10.8.0.1", t, offset);
    let redriven = |offset: i64, dlq_offset: i64| {
        let mut e = event(offset);
        e.redrive = Some(fds_worker::plan::Redrive {
            dlq_source: SourceRef {
                topic: Arc::from("transactions.dlq"),
                partition: 0,
                offset: dlq_offset,
            },
            failed_tags: vec![user.clone()],
        });
        e
    };
    let submit = |events: Vec<PlannedEvent>| {
        let plan = planner.plan(&events, t);
        let store = &store;
        async move {
            for (_, result) in store.submit(plan.units).await {
                result.unwrap();
            }
        }
    };
    let count = || hget(&store, &minute, tile);

    // Offset 10 was applied, its reply lost; offset 11 never reached the node.
    submit(vec![event(10)]).await;
    assert_eq!(count().await.as_deref(), Some("1"));
    // Later events of the same entity, applied before the redrive.
    submit(vec![event(12), event(13), event(14)]).await;
    assert_eq!(count().await.as_deref(), Some("4"));

    submit(vec![redriven(10, 3)]).await;
    assert_eq!(
        count().await.as_deref(),
        Some("4"),
        "offset 10 had been applied: not again"
    );
    submit(vec![redriven(11, 4)]).await;
    assert_eq!(
        count().await.as_deref(),
        Some("5"),
        "offset 11 had not: applied"
    );
    // Redriving the same dead letters again changes nothing.
    submit(vec![redriven(10, 3), redriven(11, 4)]).await;
    assert_eq!(count().await.as_deref(), Some("5"));
}

/// `redis.wait_replicas`: a node's units share one `WAIT` per round instead of one each (a
/// `WAIT` blocks the connection every unit of the node shares), and each unit still returns
/// only after a replica has its writes: right after the batch, every replica holds as many
/// keys as its master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_share_their_nodes_wait_and_return_only_once_a_replica_has_their_writes() {
    // A cluster of its own: WAITs and keys are counted per node.
    let cluster = tokio::task::spawn_blocking(common::start_cluster)
        .await
        .unwrap();
    let mut settings = settings(&cluster);
    settings.wait_replicas = 1;
    settings.wait_timeout = Duration::from_secs(1);
    settings.max_inflight_units = 512;
    let store = Store::connect(settings).await.unwrap();
    let planner = planner(&common::random_name("ns"));
    let t = now_ms();
    let events: Vec<_> = (0..2000)
        .map(|i| {
            tx(
                &format!("wait-{}", i % 700),
                &format!("10.9.{}.{}", i % 5, i % 200),
                t,
                i,
            )
        })
        .collect();
    let plan = planner.plan(&events, t);
    let units = plan.units.len() as u64;
    let before = tokio::task::block_in_place(|| {
        fds_testkit::bench::redis_stats::command_calls(&cluster).unwrap()
    });
    for (_, result) in store.submit(plan.units).await {
        result.unwrap();
    }
    let keys_per_node: Vec<(usize, i64, Vec<i64>)> = tokio::task::block_in_place(|| {
        cluster
            .masters()
            .into_iter()
            .map(|master| {
                let dbsize = |node| cluster.query::<i64>(node, &redis::cmd("DBSIZE")).unwrap();
                let replicas = cluster
                    .replicas_of(master)
                    .into_iter()
                    .map(dbsize)
                    .collect();
                (master, dbsize(master), replicas)
            })
            .collect()
    });
    for (master, keys, replicas) in &keys_per_node {
        assert!(*keys > 0, "master {master} holds keys");
        assert!(
            replicas.iter().any(|r| r == keys),
            "a replica of master {master} has every write when its units returned: \
             {keys} keys on the master, {replicas:?} on its replicas"
        );
    }
    let after = tokio::task::block_in_place(|| {
        fds_testkit::bench::redis_stats::command_calls(&cluster).unwrap()
    });
    let waits = after.get("wait").copied().unwrap_or(0) - before.get("wait").copied().unwrap_or(0);
    let rounds = store
        .stats()
        .replication_waits
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("{units} units, {rounds} WAIT rounds");
    assert_eq!(
        waits, rounds,
        "every WAIT Redis saw is a round the store counted"
    );
    assert!(
        rounds > 0 && rounds < units,
        "units share WAITs: {rounds} WAITs for {units} units"
    );
}

/// A count or sum hash keeps its window's running total (`ws`, `we`, `wt`) so a value at the
/// newest tile is one read, not the window's tiles. It must always be what adding the tiles
/// gives: events in random time order (windows moving back and forth), redelivered batches,
/// events too late to write, tiles trimmed (grace 0) while still inside a later event's
/// window, and the newest tile written without the total (an older worker's library). Two checks: every value the units answer equals a model of the applied events (no
/// trimming: grace 1 h), and after every batch `wt` equals the sum of its tiles (trimming on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_window_total_always_equals_adding_the_tiles() {
    use fds_worker::config::FeatureConfig;
    use rand::{Rng as _, SeedableRng as _};
    let cluster = tokio::task::spawn_blocking(common::shared_cluster)
        .await
        .unwrap();
    let store = Store::connect(settings(&cluster)).await.unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261203);
    for grace_ms in [3_600_000, 0] {
        let ns = common::random_name("ns");
        let mut plan_settings = PlanSettings::seed_defaults();
        plan_settings.keys = KeyBuilder::namespaced(&ns);
        plan_settings.grace_ms = grace_ms;
        // 10 one-second tiles.
        plan_settings.features = vec![FeatureConfig::count(
            "user_tx_10s",
            EntityKind::User,
            10,
            1,
            None,
        )];
        let planner = Planner::new(plan_settings);
        let tile = |t: i64| t.div_euclid(1_000);
        let key = KeyBuilder::namespaced(&ns)
            .feature(&Entity::new(EntityKind::User, "rt").tag(), "user_tx_10s");
        let user = Entity::new(EntityKind::User, "rt").tag();
        // (tile, applied) of every event so far, in the order the units applied them.
        let mut applied: Vec<i64> = Vec::new();
        let mut offset = 0;
        for batch in 0..12 {
            let now = now_ms();
            let events: Vec<_> = (0..25)
                .map(|_| {
                    offset += 1;
                    // Mostly recent, some from across the window and beyond it.
                    let back = if rng.random_bool(0.7) {
                        rng.random_range(0..3_000)
                    } else {
                        rng.random_range(0..14_000)
                    };
                    tx("rt", "10.9.9.9", now - back, offset)
                })
                .collect();
            let times: Vec<i64> = events
                .iter()
                .map(|e| match &e.body {
                    EventBody::Transaction(t) => t.event_time_ms,
                    _ => unreachable!(),
                })
                .collect();
            let plan = planner.plan(&events, now);
            let results = store.submit(plan.units.clone()).await;
            let answers = user_answers(&results, &user);
            assert_eq!(answers.len(), times.len());
            if grace_ms > 0 {
                for (answer, time) in answers.iter().zip(&times) {
                    applied.push(tile(*time));
                    let t = tile(*time);
                    let expected = applied.iter().filter(|s| (t - 10..=t).contains(s)).count();
                    assert_eq!(
                        answer.counts[0], expected as i64,
                        "batch {batch}: the value at tile {t} adds its window's tiles"
                    );
                }
            }
            if batch % 4 == 3 {
                // Redelivered: nothing is added, the values are read back.
                let again = store.submit(plan.units).await;
                assert!(user_answers(&again, &user).iter().all(|a| !a.applied));
            }
            let mut connection = store.connection();
            let state: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(&key)
                .arg(&["ws", "we", "wt"])
                .query_async(&mut connection)
                .await
                .unwrap();
            let [Some(ws), Some(we), Some(wt)] = state[..] else {
                panic!("batch {batch}: no running total: {state:?}");
            };
            assert_eq!(we - ws, 10, "the total covers one window");
            let tiles: Vec<Option<i64>> = redis::cmd("HMGET")
                .arg(&key)
                .arg((ws..=we).map(|t| t.to_string()).collect::<Vec<_>>())
                .query_async(&mut connection)
                .await
                .unwrap();
            assert_eq!(
                wt,
                tiles.iter().flatten().sum::<i64>(),
                "batch {batch} (grace {grace_ms} ms): the running total of tiles {ws}..={we}"
            );
            if grace_ms == 0 && batch % 3 == 1 {
                // A worker of the version before running totals writes the newest tile (a
                // rolling upgrade): the next op finds the tile changed behind the total's back
                // and makes the total again from the tiles (checked after the next batch).
                let _: i64 = redis::cmd("HINCRBY")
                    .arg(&key)
                    .arg(we)
                    .arg(1_000)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
        }
    }
}
