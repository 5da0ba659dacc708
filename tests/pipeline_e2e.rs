//! End to end on a real 6-node Redis Cluster and Apache Kafka: generated traffic → worker →
//! every transaction enriched exactly once, every counter equal to ground truth, blacklist
//! entries with their tier's expiry; also across a worker crash, and across rebalances as
//! workers join and leave — under both consumer group protocols (classic cooperative-sticky
//! and KIP-848 `consumer`, whose 6 s session the test brokers decide).

mod common;

use std::time::Duration;

use common::worker::{
    PARTITIONS, assert_enriched, assert_features, assert_ground_truth, command_calls,
    enrichment_copies, enrichment_counts, publish, publish_in_background, read_all, start_stack,
    start_worker, test_config, traffic, wait_for_enrichment,
};
use fds_testkit::demo::{KafkaSetup, LocalStack};
use fds_worker::config::{Config, Delivery, GroupProtocol};
use fds_worker::generate::Traffic;
use fds_worker::metrics::{Metrics, PublishFailureLabels};
use fds_worker::pipeline::{RunError, run};
use fds_worker::redrive::{RedriveOptions, redrive};
use fds_worker::sink::dead_letter::header;
use fds_worker::source::SourceMessage;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

const SPAN: Duration = Duration::from_secs(20);

/// A stack on librdkafka's mock cluster, for the tests that inject broker errors (Apache Kafka
/// cannot be told to refuse one particular request).
async fn mock_stack() -> LocalStack {
    common::worker::start_stack_on(common::test_cluster_options(), KafkaSetup::Mock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transaction_is_enriched_once_and_counters_equal_ground_truth() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 3_000, 1, SPAN);
    publish(&stack, &config, &traffic, None).await;
    let records = traffic.events.len() as u64;

    let fcalls_before = command_calls(&stack, "fcall");
    let worker = start_worker(&config);
    let progress = worker
        .wait_finished(&config, records, Duration::from_secs(120))
        .await;
    let summary = worker.stop().await;
    assert_eq!(progress.dead_lettered, 0);
    assert!(progress.breaches > 0, "bursts breach the velocity rule");
    // Units are one per distinct slot per batch (the planner's count), and Redis saw exactly
    // that many FCALLs: nothing per event, no hidden retries.
    assert_eq!(
        command_calls(&stack, "fcall") - fcalls_before,
        summary.units
    );

    assert_enriched(&enrichment_counts(&stack, &config), &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
    // Every feature value of every record equals the generator's (users: exact, at first
    // delivery; shared entities: within the range delivery order allows).
    let flagged = assert_features(&stack, &config, &traffic, true);
    assert!(
        flagged > 0,
        "the bursts across tile and minute edges are flagged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_aborted_mid_stream_and_restarted_loses_and_doubles_nothing() {
    let stack = start_stack().await;
    let config = test_config(&stack);
    let traffic = traffic(&config, 4_000, 2, SPAN);
    publish(&stack, &config, &traffic, None).await;

    // The first worker is aborted mid-stream: its in-flight batches are dropped, and offsets
    // it stored but had not committed are lost, so the restart redelivers part of the stream.
    let first = start_worker(&config);
    common::wait_until_async(
        "1000 records enriched by the first worker",
        Duration::from_secs(120),
        Duration::from_millis(10),
        || async {
            match first.progress(&config) {
                p if p.enriched >= 1_000 => Ok(()),
                p => Err(format!("{p:?}")),
            }
        },
    )
    .await;
    first.handle.abort();
    let _ = first.handle.await;

    let second = start_worker(&config);
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    let summary = second.stop().await;
    assert!(summary.consumed > 0);
    // Redelivered transactions may be enriched twice (at-least-once output), never zero times.
    assert_enriched(&counts, &traffic, false);
    // Redelivered records read their tiles back: every value within the truth's bounds.
    assert_features(&stack, &config, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

/// Workers join one by one while traffic flows, then all but one leave (a graceful stop each):
/// the group rebalances at every change, every worker gets partitions, and the result is
/// exact (records in flight at a revoke are redone by the next owner, and exactly-once delivery
/// commits their enrichment once).
async fn workers_join_and_leave(protocol: GroupProtocol, workers: usize, seed: u64) {
    let stack = start_stack().await;
    let mut config = test_config(&stack);
    config.kafka.group_protocol = protocol;
    let traffic = traffic(&config, 4_000, seed, SPAN);
    let half = traffic.events.len() / 2;
    let part = |events: &[_]| Traffic {
        events: events.to_vec(),
        truth: traffic.truth.clone(),
    };
    publish(&stack, &config, &part(&traffic.events[..half]), None).await;

    let mut running = vec![start_worker(&config)];
    common::wait_until_async(
        &format!("{protocol:?}: the first worker to enrich 500 records"),
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            match running[0].progress(&config) {
                p if p.enriched >= 500 => Ok(()),
                p => Err(format!("{p:?}")),
            }
        },
    )
    .await;
    let publishing = publish_in_background(&stack, &config, &part(&traffic.events[half..]), 150);
    // The others join while the second half is flowing: a rebalance mid-stream for each.
    for _ in 1..workers {
        let joined = start_worker(&config);
        common::wait_until_async(
            &format!("{protocol:?}: worker {} to get partitions", running.len()),
            Duration::from_secs(60),
            Duration::from_millis(20),
            || async {
                match joined.metrics.assigned_partitions.get() {
                    0 => Err("0 partitions assigned"),
                    _ => Ok(()),
                }
            },
        )
        .await;
        running.push(joined);
    }
    // Every member works on its share before the leaving starts.
    common::wait_until_async(
        &format!("{protocol:?}: every worker to consume records"),
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            let consumed: Vec<u64> = running
                .iter()
                .map(|w| w.progress(&config).consumed)
                .collect();
            if consumed.iter().all(|&n| n > 0) {
                Ok(())
            } else {
                Err(format!("consumed per worker {consumed:?}"))
            }
        },
    )
    .await;
    // Then all but the first leave, one by one, while traffic still flows.
    let mut summaries = Vec::new();
    while running.len() > 1 {
        summaries.push(running.pop().expect("a worker").stop().await);
    }
    publishing.await.unwrap();
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    summaries.push(running.pop().expect("the first worker").stop().await);
    for (i, summary) in summaries.iter().enumerate() {
        assert!(summary.consumed > 0, "{protocol:?}: worker {i} consumed");
    }
    // Exactly-once delivery (the default): a rebalance redoes in-flight records, but their
    // output is committed once.
    if counts.values().any(|&n| n > 1) {
        // Where the copies are, beside the workers' log, for the failure's diagnosis.
        let copies: Vec<_> = enrichment_copies(&stack, &config)
            .into_iter()
            .filter(|(_, copies)| copies.len() > 1)
            .collect();
        eprintln!("{protocol:?}: enrichment records more than once: {copies:?}");
    }
    assert_enriched(&counts, &traffic, true);
    assert_features(&stack, &config, &traffic, false);
    assert_ground_truth(&stack, &traffic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_rebalance_exactly_under_the_classic_protocol() {
    workers_join_and_leave(GroupProtocol::Classic, 2, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_rebalance_exactly_under_the_consumer_protocol() {
    workers_join_and_leave(GroupProtocol::Consumer, 2, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_join_and_leave_exactly_under_the_classic_protocol() {
    workers_join_and_leave(GroupProtocol::Classic, 3, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_join_and_leave_exactly_under_the_consumer_protocol() {
    workers_join_and_leave(GroupProtocol::Consumer, 3, 6).await;
}

/// The worker's give-ups of enrichment records the broker refused for good as too large.
fn too_large_give_ups(metrics: &Metrics, config: &Config) -> u64 {
    metrics
        .publish_failures
        .get_or_create(&PublishFailureLabels {
            topic: config.kafka.enrichment_topic.clone(),
            kind: "permanent".into(),
            error: "message_size_too_large".into(),
            decision: "gave_up".into(),
        })
        .get()
}

/// The transaction topic's dead letters, each checked to be a `publish_failed` of a transaction
/// whose enrichment record was refused as too large, naming the enrichment topic and the error.
fn refused_enrichment_letters(stack: &LocalStack, config: &Config) -> Vec<SourceMessage> {
    let letters = read_all(
        stack,
        &config.kafka.dlq_topic(&config.kafka.transactions_topic),
    );
    for letter in &letters {
        assert_eq!(letter.header(header::KIND), Some("publish_failed"));
        assert_eq!(
            letter.header(header::TOPIC),
            Some(config.kafka.transactions_topic.as_str())
        );
        let message = letter.header(header::MESSAGE).unwrap_or_default();
        assert!(
            message.contains(&format!("`{}`", config.kafka.enrichment_topic))
                && message.contains("MessageSizeTooLarge"),
            "names the topic and the error: {message}"
        );
    }
    letters
}

/// A produce request the broker refuses for good (`MESSAGE_TOO_LARGE`, as for a record over
/// the topic's `max.message.bytes`): the enrichment records in it are given up at once, their
/// source records are dead-lettered as `publish_failed` naming the topic and the error, the
/// rest of the stream goes on, and a redrive publishes the missing enrichment records without
/// counting anything twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrichment_refused_for_good_is_dead_lettered_and_redrive_publishes_it_once() {
    // librdkafka's mock: the one broker that refuses exactly the first produce request.
    let stack = mock_stack().await;
    let mut config = test_config(&stack);
    // The at-least-once sink's own give-up path (the mock's injected produce errors
    // confuse its transaction bookkeeping: exactly once is tested on Apache Kafka).
    config.kafka.delivery = Delivery::AtLeastOnce;
    let traffic = traffic(&config, 300, 5, SPAN);
    publish(&stack, &config, &traffic, None).await;
    let records = traffic.events.len() as u64;
    // The worker's first produce request is its first enrichment records.
    stack
        .kafka
        .mock()
        .expect("a mock stack")
        .push_request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        )
        .unwrap();

    let worker = start_worker(&config);
    let progress = worker
        .wait_finished(&config, records, Duration::from_secs(120))
        .await;
    let gave_up = too_large_give_ups(&worker.metrics, &config);
    worker.stop().await;
    assert!(progress.dead_lettered > 0, "{progress:?}");
    assert_eq!(
        gave_up, progress.dead_lettered,
        "one give-up per dead letter"
    );

    let dlq = config.kafka.dlq_topic(&config.kafka.transactions_topic);
    let letters = refused_enrichment_letters(&stack, &config);
    assert_eq!(letters.len() as u64, progress.dead_lettered);
    let counts = enrichment_counts(&stack, &config);
    assert_eq!(
        counts.len() + letters.len(),
        traffic.truth.transactions,
        "every transaction enriched or dead-lettered"
    );
    // The writes were applied once, before publishing failed.
    assert_ground_truth(&stack, &traffic).await;

    let options = RedriveOptions {
        topic: dlq,
        filters: Vec::new(),
        batch_size: 200,
    };
    let summary = redrive(&config, &options, Metrics::unregistered(), |_, _| {})
        .await
        .expect("redrive");
    assert_eq!(summary.enriched, letters.len() as u64, "{summary:?}");
    assert_eq!(summary.dead_lettered_again, 0, "{summary:?}");
    assert_enriched(&enrichment_counts(&stack, &config), &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
}

/// The same on real Apache Kafka: an enrichment topic whose `max.message.bytes` is below every
/// batch of enrichment records (61 bytes of batch header, and every record has a user-id key
/// and an Avro value with a 36-character event id: over 100 bytes) makes the broker refuse
/// every produce request to it (`MESSAGE_TOO_LARGE`; librdkafka fails the whole batch). The
/// limit still fits a transaction marker (a 79-byte control batch): below that, the
/// coordinator could never end a transaction on the topic. Every transaction ends as a `publish_failed` dead letter naming the topic and
/// the error, within the bound (no endless retry), verdicts apply as usual, and Redis equals
/// the ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_over_the_topics_max_message_bytes_on_apache_kafka_is_dead_lettered() {
    const MAX_MESSAGE_BYTES: &str = "100";
    let stack = start_stack().await;
    let mut config = test_config(&stack);
    config.kafka.enrichment_topic = common::random_name("enriched-small");
    let topic = config.kafka.enrichment_topic.clone();
    tokio::task::spawn_blocking(move || {
        common::shared_kafka()
            .create_topic_with(
                &topic,
                PARTITIONS,
                &[("max.message.bytes", MAX_MESSAGE_BYTES)],
            )
            .expect("the small enrichment topic")
    })
    .await
    .unwrap();
    let traffic = traffic(&config, 300, 7, SPAN);
    publish(&stack, &config, &traffic, None).await;
    let records = traffic.events.len() as u64;

    let worker = start_worker(&config);
    let progress = worker
        .wait_finished(&config, records, Duration::from_secs(120))
        .await;
    let gave_up = too_large_give_ups(&worker.metrics, &config);
    tokio::time::timeout(Duration::from_secs(60), worker.stop())
        .await
        .expect("the worker stops within a minute");
    assert_eq!(
        progress.dead_lettered, traffic.truth.transactions as u64,
        "every transaction dead-lettered: {progress:?}"
    );
    assert_eq!(progress.enriched, 0, "{progress:?}");
    assert_eq!(
        gave_up, progress.dead_lettered,
        "one give-up per dead letter"
    );

    let letters = refused_enrichment_letters(&stack, &config);
    assert_eq!(letters.len(), traffic.truth.transactions);
    assert!(
        enrichment_counts(&stack, &config).is_empty(),
        "the broker stored no enrichment record"
    );
    // The writes were applied once, before publishing failed.
    assert_ground_truth(&stack, &traffic).await;
}

/// A dead letter the broker refuses for good has nowhere to go: the worker stops with an error
/// naming the dead-letter topic and the error, quickly (no endless retry), and commits no
/// offset past the records it could not finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_refused_for_good_stops_the_worker_naming_the_topic() {
    // librdkafka's mock: it injects the refusal into every produce request from now on.
    let stack = mock_stack().await;
    let mut config = test_config(&stack);
    // The at-least-once sink's own give-up path (the mock's injected produce errors
    // confuse its transaction bookkeeping: exactly once is tested on Apache Kafka).
    config.kafka.delivery = Delivery::AtLeastOnce;
    let traffic = traffic(&config, 100, 6, SPAN);
    publish(&stack, &config, &traffic, None).await;
    // Every produce request from now on is refused: enrichment records, then their dead letters.
    let refusals = vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 500];
    stack
        .kafka
        .mock()
        .expect("a mock stack")
        .push_request_errors(RDKafkaApiKey::Produce, &refusals)
        .unwrap();

    let ran = tokio::time::timeout(
        Duration::from_secs(60),
        run(&config, Metrics::unregistered(), std::future::pending()),
    )
    .await
    .expect("the worker stops by itself, within a minute");
    let failure = match ran {
        Err(RunError::Sink(failure)) => failure,
        other => panic!("expected a sink error, got {other:?}"),
    };
    let dlq = config.kafka.dlq_topic(&config.kafka.transactions_topic);
    assert_eq!(failure.topic, dlq);
    assert_eq!(
        failure.error.error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::MessageSizeTooLarge)
    );
    let text = RunError::from(*failure).to_string();
    assert!(
        text.contains(&format!("`{dlq}`")) && text.contains("MessageSizeTooLarge"),
        "{text}"
    );

    // No transaction was finished, so no offset of the transaction topic moved.
    let consumer: BaseConsumer = stack
        .kafka
        .client_config()
        .set("group.id", &config.kafka.group_id)
        .create()
        .unwrap();
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(&config.kafka.transactions_topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    for element in committed.elements() {
        assert!(
            matches!(element.offset(), Offset::Invalid | Offset::Offset(0)),
            "partition {} committed at {:?}",
            element.partition(),
            element.offset()
        );
    }
}

/// Rules reloaded on SIGHUP while traffic flows: the thresholds change between two batches,
/// nothing is lost or counted twice, every record names the rule version that decided it (the
/// old one, then the new one, per partition), and its features carry that version's threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reloaded_on_sighup_under_load_lose_and_double_nothing() {
    use fds_worker::generate::{check_features, feature_truth};
    use fds_worker::pipeline::plan_settings;
    let stack = start_stack().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    let write_rules = |version: &str, threshold: u64| {
        std::fs::write(
            &rules,
            format!("version = \"{version}\"\n[thresholds]\nuser_tx_1m = {threshold}\n"),
        )
        .unwrap();
    };
    write_rules("v1", 5);
    let mut base = test_config(&stack);
    base.velocity.rules_file = Some(rules.clone());
    let config = base.with_rules_file().unwrap();
    let traffic = traffic(&config, 3_000, 17, SPAN);
    // The worker first, then traffic at 300 events/s (≈ 11 s), so the reload lands mid-stream.
    let worker = start_worker(&config);
    let publishing = publish_in_background(&stack, &config, &traffic, 300);
    common::wait_until_async(
        "a fifth of the transactions enriched under v1",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || async {
            let n = enrichment_counts(&stack, &config).len();
            if n >= traffic.truth.transactions / 5 {
                Ok(())
            } else {
                Err(format!("{n} enriched"))
            }
        },
    )
    .await;
    write_rules("v2", 3);
    nix::sys::signal::raise(nix::sys::signal::Signal::SIGHUP).unwrap();
    publishing.await.unwrap();
    let counts = wait_for_enrichment(&stack, &config, &traffic, || 0).await;
    worker.stop().await;
    assert_enriched(&counts, &traffic, true);
    assert_ground_truth(&stack, &traffic).await;

    let v2 = base.with_rules_file().unwrap();
    let truths = [
        (
            "v1",
            plan_settings(&config, ""),
            traffic.truth.features.clone(),
        ),
        (
            "v2",
            plan_settings(&v2, ""),
            feature_truth(&traffic.events, &plan_settings(&v2, "")),
        ),
    ];
    let codec = fds_worker::codec::Codec::builtin();
    let mut problems = Vec::new();
    let mut seen: std::collections::BTreeMap<i32, Vec<(i64, String)>> = Default::default();
    for record in read_all(&stack, &config.kafka.enrichment_topic) {
        let e = codec
            .decode_enrichment(record.payload.as_deref().unwrap_or_default())
            .unwrap();
        let version = e.rule_version.clone().unwrap_or_default();
        let Some((_, plan, truth)) = truths.iter().find(|(v, _, _)| *v == version) else {
            problems.push(format!("{}: rule version {version:?}", e.event_id));
            continue;
        };
        problems.extend(check_features(&e, truth, plan, false));
        seen.entry(e.source_partition)
            .or_default()
            .push((e.source_offset, version));
    }
    assert!(
        problems.is_empty(),
        "{:?}",
        &problems[..problems.len().min(5)]
    );
    let mut versions = std::collections::BTreeSet::new();
    for (partition, mut records) in seen {
        records.sort();
        let switched = records
            .iter()
            .position(|(_, v)| v == "v2")
            .unwrap_or(records.len());
        assert!(
            records[switched..].iter().all(|(_, v)| v == "v2"),
            "partition {partition}: v1 after v2"
        );
        versions.extend(records.into_iter().map(|(_, v)| v));
    }
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        vec!["v1".to_owned(), "v2".to_owned()],
        "both rule versions decided records"
    );
}

/// Sums per currency and distinct counts end to end, beside the default counts: every record's
/// values equal the generator's (a user's sum exactly; distinct cards per device and accounts
/// per IP within the HyperLogLog bound, 3 × 0.81 %, at least 1, of the range delivery order
/// allows), and every tile in Redis equals the truth (distinct tiles within the same bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sums_and_distinct_counts_equal_ground_truth() {
    use fds_worker::config::{Aggregate, FeatureConfig, Field};
    let stack = start_stack().await;
    let mut config = test_config(&stack);
    let feature = |name: &str, entity, aggregate, of, threshold| FeatureConfig {
        name: name.into(),
        entity,
        aggregate,
        of: Some(of),
        window: Duration::from_secs(3600),
        tile: Duration::from_secs(60),
        threshold,
    };
    use fds_worker::event::EntityKind;
    config.features.extend([
        feature(
            "user_spend_1h",
            EntityKind::User,
            Aggregate::Sum,
            Field::AmountMinor,
            Some(2_000_000),
        ),
        feature(
            "card_bin_spend_1h",
            EntityKind::CardBin,
            Aggregate::Sum,
            Field::AmountMinor,
            None,
        ),
        feature(
            "device_cards_1h",
            EntityKind::Device,
            Aggregate::Distinct,
            Field::CardBin,
            Some(3),
        ),
        feature(
            "ip_users_1h",
            EntityKind::Ip,
            Aggregate::Distinct,
            Field::UserId,
            Some(20),
        ),
    ]);
    config.validate().unwrap();
    let traffic = traffic(&config, 3_000, 23, SPAN);
    assert!(!traffic.truth.distinct.is_empty());
    publish(&stack, &config, &traffic, None).await;
    let worker = start_worker(&config);
    let progress = worker
        .wait_finished(
            &config,
            traffic.events.len() as u64,
            Duration::from_secs(120),
        )
        .await;
    worker.stop().await;
    assert_eq!(progress.dead_lettered, 0);
    assert_enriched(&enrichment_counts(&stack, &config), &traffic, true);
    assert_ground_truth(&stack, &traffic).await;
    assert!(assert_features(&stack, &config, &traffic, true) > 0);
    // The mule devices (many cards) and the shared IPs (many accounts) are what the distinct
    // features see: some record has a device with more than 3 cards.
    let codec = fds_worker::codec::Codec::builtin();
    let most_cards = read_all(&stack, &config.kafka.enrichment_topic)
        .iter()
        .filter_map(|r| codec.decode_enrichment(r.payload.as_deref()?).ok())
        .flat_map(|e| e.features)
        .filter(|f| f.name == "device_cards_1h")
        .map(|f| f.value)
        .max()
        .unwrap_or(0);
    assert!(most_cards > 3, "a mule device: {most_cards} cards");
}
